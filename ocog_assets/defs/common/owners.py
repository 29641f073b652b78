"""Who answers for each domain's assets (Dagster `owners`: the UI's Owner column and filter).

Teams, not people: one place to change when the people change.
"""

DATA = ["team:ocog-data"]
BENCHMARKS = ["team:ocog-benchmarks"]
ML = ["team:ocog-ml"]
PLATFORM = ["team:ocog-platform"]
