"""How large an image srdistill reads or writes by default.

Plain constants without torch: ``srdistill upscale --help`` shows them as the flags' defaults.
"""

# Larger inputs are refused unless raised: a small compressed file can decode to gigabytes.
DEFAULT_MAX_PIXELS = 100_000_000

# Output images grow by scale squared; refuse above this many output pixels unless raised
# (400 MP of 8-bit RGB is 1.2 GB in memory before encoding).
DEFAULT_MAX_OUTPUT_PIXELS = 400_000_000
