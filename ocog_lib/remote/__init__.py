"""Object storage around the engine: an embedded S3 endpoint, uploads, a WAN shaper.

The byte sources that read remote objects live in `ocog_lib.storage`; this package
holds what serves, fills and shapes the storage they read from. Import the modules
themselves (`ocog_lib.remote.s3server`, `.upload`, `.shaper`, `.secrets`):
this file stays empty so importing `secrets` pulls in neither boto3 nor moto.
"""
