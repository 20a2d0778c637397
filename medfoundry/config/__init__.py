"""Recipe profiles: one pydantic schema, validated before anything runs.

Each section's model lives beside the others in this package (light imports only: no torch, no mlflow) so that a bad
profile fails in well under a second with one line naming the field and the reason.
"""

from medfoundry.config.profile import Profile, ProfileError, load_profile, profile_hash

__all__ = ["Profile", "ProfileError", "load_profile", "profile_hash"]
