"""The pure layer: jobs, schedules, the tick planner, claim verdicts.

No I/O, no clock reads, no SQL.
"""
