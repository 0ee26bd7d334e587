"""zoo plugin bridging timm."""
