"""Capture: Unreal Engine (or the embedded stand-in engine) through UnrealCV, Ray actors per engine,
trajectory replay and planning, and ingest of pre-rendered footage."""
