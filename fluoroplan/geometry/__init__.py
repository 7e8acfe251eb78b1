"""Frames, conventions, the C-arm and the projection model. Imports nothing else of fluoroplan."""
