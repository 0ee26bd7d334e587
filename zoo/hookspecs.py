"""Kept for plugins written against zoo 0.1: the hooks now live in ``zoo.plugins.hookspecs``."""

from zoo.plugins.hookspecs import HOOKS, Register, hookimpl, hookspec

__all__ = ["HOOKS", "Register", "hookimpl", "hookspec"]
