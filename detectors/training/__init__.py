"""Training of the shipped model: Hungarian matching, set-prediction losses, the resumable loop."""
