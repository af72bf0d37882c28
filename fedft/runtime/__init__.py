"""Running the apps in this process: Flower's simulation engine on Ray (`engine`) with
fedft's scoped patches for many clients (`engine_patches`), clean stops on SIGINT/SIGTERM
(`interrupt`) and per-round progress lines (`progress`).

May import everything up to `fedft.fl`; never the jobs, deployment or entry points.
"""
