"""The embedded stand-in engine: procedural scenes, a numpy renderer, and an UnrealCV-protocol server.

`python -m capture.standin --port 0 --scene street-7` serves one scene to the real `unrealcv.Client`.
"""
