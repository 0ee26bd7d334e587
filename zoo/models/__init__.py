"""Trained models as files: safetensors weights with zoo's metadata, the timm/Hugging Face
folder layout, loading for inference, initialising from existing weights, and export."""
