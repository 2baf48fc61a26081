"""Applications over `Model`: run on frame sources, benchmark, the demo, drawing detections."""
