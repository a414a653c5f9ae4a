"""The ``unicore`` site: UNICORE/X REST through pyunicore (the official client)."""
