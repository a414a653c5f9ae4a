"""Project archives: a streaming zip on the client, a distrustful unzip on the server.

- :mod:`.pack`: the client zips the project file by file in 1 MiB chunks, so a project with
  multi-GB data never sits in memory
- :mod:`.unpack`: the server unpacks what users upload: every field an attacker controls
  (names, modes, declared sizes, offsets) is checked before a byte is written, and the bytes
  actually written are counted, since declared sizes can lie
- :mod:`.peek`: the server's look into an upload before unpacking it: member names, and
  small files such as the MLproject and the backend config
"""
