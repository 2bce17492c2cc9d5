"""Shared pieces of sysinv_ext: exceptions, RPC transport setup, compatibility shims."""
