"""Image decoding/encoding, datasets and the MATLAB-compatible resize."""
