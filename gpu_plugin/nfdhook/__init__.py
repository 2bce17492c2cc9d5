"""`intel-gpu-nfdhook` (upstream's cmd/gpu_nfdhook): :mod:`.main` is the program,
:mod:`.labeler` computes the labels (upstream's cmd/internal/labeler, also used by the
plugin's ``-resource-manager``).
"""
