"""The base layer: errors, atomic files and checksums, devices, the safe torch loader. Imports no other layer."""
