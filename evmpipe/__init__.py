"""evmpipe: evmpipe."""
import os

# eth-hash picks its keccak backend at first use: prefer pysha3 (safe-pysha3), about
# five times faster than pycryptodome here (DESIGN.md section 8).
os.environ.setdefault("ETH_HASH_BACKEND", "pysha3")
