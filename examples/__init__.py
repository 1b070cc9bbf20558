"""Example applications that use sessionshift."""
