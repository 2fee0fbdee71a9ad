"""Fine-tuning RetinaFace on annotated faces (``surgbox train``); imports torch."""
