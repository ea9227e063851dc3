# Runs the original StarlingX sw-patch client (cgcs_patch/patch_client.py, unmodified)
# against the controller at $STX_TEST_API_ADDR instead of its fixed 127.0.0.1:5487: the
# tests never use the well-known ports.
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cgcs_patch.patch_client as patch_client  # noqa: E402

patch_client.api_addr = os.environ["STX_TEST_API_ADDR"]
sys.argv[0] = "sw-patch"
patch_client.main()
