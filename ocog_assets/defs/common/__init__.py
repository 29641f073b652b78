"""What every domain shares: resources, partitions and pools."""
