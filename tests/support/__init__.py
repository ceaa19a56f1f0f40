"""What the test modules share; a test module imports from here, never from another test module.

``harness``
    ``evaluate`` (one loss on one batch, in-process, through ``service.core``), the one
    finite-difference harness for gradients and Hessians (``central_differences`` and the
    ``assert_*_matches_finite_differences`` built on it), the tolerances (``RTOL``/``ATOL`` of
    SPEC section 4, ``FD_*`` for finite differences), the variants (each loss with each
    parameter set of its case) and sampling (``sample``, ``shapes_for``, ``kappa``).
``references``
    The documented vocabulary of the reference cases (``Case``, input kinds, ``CASES``; terms
    defined in its docstring) and one module per loss family (``regression``, ``binary``,
    ``multiclass``, ``distribution``, ``overlap``) with each loss's slow, obvious NumPy
    reference and its ``Case``. Adding a loss touches exactly one of these modules.
``problems``
    The catalogue of malformed requests (``BAD_REQUESTS``), body builders and
    ``assert_problem`` for problem+json answers (SPEC section 5).
``bodies``
    ``/loss`` bodies besides JSON lists: ``packed`` arrays, ``npy`` files, ``framed_body`` (the
    binary framing), ``multipart_body``, and ``split_framed`` for framed answers.
``servers``
    ``ROOT``, real ``lossd serve`` processes (``Server``, ``start_server``, ``served``) and
    ``http_client``; ``tests/conftest.py`` builds its fixtures on them.
``browser``
    Debian's headless Chromium over the DevTools protocol (``browser``, ``Page``): pages that can
    reach nothing but 127.0.0.1, their console errors kept, keys, files and screenshots.
``selection``
    Which losses a collected test is about, for ``pytest --loss NAME`` (``make test-loss``).
"""
