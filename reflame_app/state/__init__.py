"""Screen-free state of every panel: plain objects, testable without a window."""
