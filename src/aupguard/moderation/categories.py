"""aupguard's own category names, with a one-line definition each.

Every moderator reports in these names where it can: the Claude moderator asks for them,
the guard-model formats map their codes onto them (see ``guard_formats``), and
``[moderation] actions`` is keyed by them. A code a model gives that no table knows is
kept as it came (``S15``), never dropped, so a flag always reaches ``actions``.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["DEFAULT_CATEGORIES"]

DEFAULT_CATEGORIES: Mapping[str, str] = {
    "violent_crimes": "Content that enables, encourages or plans violence against people or animals, "
    "including terrorism, murder, assault and kidnapping.",
    "non_violent_crimes": "Content that enables crimes without direct violence: fraud, scams, theft, "
    "hacking into systems, drug trafficking, money laundering.",
    "sex_crimes": "Content that enables or endorses sexual assault, trafficking or harassment.",
    "child_exploitation": "Any sexual content involving minors, or content that enables grooming or abuse of children.",
    "indiscriminate_weapons": "Content that helps create or deploy chemical, biological, radiological, "
    "nuclear or explosive weapons, or other weapons of mass harm.",
    "hate": "Content that demeans or dehumanises people, or incites hatred or violence, on the basis of "
    "protected characteristics such as race, religion, gender, sexual orientation or disability.",
    "harassment": "Threats, intimidation, bullying, or targeted abuse of a real person.",
    "self_harm": "Content that encourages or gives instructions for suicide, self-injury or eating disorders.",
    "sexual_content": "Sexually explicit content.",
    "privacy": "Requests to expose, track or compile sensitive personal information about private individuals.",
    "malicious_code": "Requests to write or improve malware, exploits or tools for unauthorised access.",
    "election_integrity": "Content that spreads false information about voting or supports influence "
    "operations and coordinated deception.",
}
"""Usage-policy categories in the shape the guide recommends (a name and a one-line
definition each). Pass ``categories=`` to use your own."""
