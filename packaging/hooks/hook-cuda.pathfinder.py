"""cuda.pathfinder (how CuPy finds NVRTC and the CUDA headers).

It runs one of its modules only as a `sys.executable -m MODULE` helper
(packaging/pyi_rth_cuda_pathfinder.py answers that in the frozen app), so the
analysis never sees it imported. Its sub-packages have no __init__.py, so
collect_submodules() does not find it either: it is named here.
"""

hiddenimports = ["cuda.pathfinder._dynamic_libs.dynamic_lib_subprocess"]
