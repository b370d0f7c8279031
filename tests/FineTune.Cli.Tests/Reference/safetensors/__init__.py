# Stands in for pip's safetensors package, which Debian 12 does not ship, so a published README's script runs here unchanged.
