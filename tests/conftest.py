import os
import sys

# Tests import helper modules such as `oracle` by plain name.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
# transformers (the oracle) must never reach the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
