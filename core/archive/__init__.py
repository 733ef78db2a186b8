"""Layer archives: compression detection and streams, applying OCI layer tars onto a
directory (safely), and writing the OCI layer tar of the changes between two directories.

The functions here are synchronous and do blocking file work; async callers run them with
``asyncio.to_thread``.
"""
