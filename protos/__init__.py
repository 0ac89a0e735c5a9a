"""The wire: .proto sources, their generated modules, and the array codec."""
