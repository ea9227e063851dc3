# The StarlingX platform's configuration module, as the original sw-patch client reads it:
# only the two values it imports. On a StarlingX host these come from
# /etc/platform/platform.conf; here they describe the test's controller.
import os

SW_VERSION = os.environ.get("STX_TEST_SW_VERSION", "19.01")
INITIAL_CONTROLLER_CONFIG_COMPLETE = "/nonexistent/.initial_config_complete"
