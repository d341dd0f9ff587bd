"""Adapters that let other applications drive ptychopinn (they depend on workflows only)."""
