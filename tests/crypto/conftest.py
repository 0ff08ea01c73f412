# The crypto models must be in the metadata before the session-wide create_all runs;
# create_app will import them itself once the lead registers them.
import portal.crypto.models  # noqa: F401
