"""Builds the optional C accelerator; everything else is in pyproject.toml.

Without a C compiler the build carries on and anyws uses its pure-Python masking. Set
ANYWS_REQUIRE_SPEEDUPS=1 to make a failed build an error (CI does).
"""

import os

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "anyws._speedups",
            sources=["anyws/_speedups.c"],
            optional=not os.environ.get("ANYWS_REQUIRE_SPEEDUPS"),
        )
    ]
)
