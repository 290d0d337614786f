"""Speech and language providers behind small async interfaces, chosen by name.

See :mod:`voice.providers.base` for the contracts and :mod:`voice.providers.registry`
for construction by name.
"""
