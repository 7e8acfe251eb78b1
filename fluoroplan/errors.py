"""The base of every error fluoroplan reports to a user.

Every message is a sentence a radiologist can act on: what is wrong, and what to do. The GUI
shows ``str(error)`` in a dialog; the CLI prints it to stderr and exits with code 2. The file
boundary's errors (:mod:`fluoroplan.io.errors`) derive from it; so do the domain model's.
"""

from __future__ import annotations


class FluoroplanError(Exception):
    """Base of every error fluoroplan reports to a user (never shown as a traceback)."""
