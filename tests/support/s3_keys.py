"""S3 key names that break naive XML or URL handling, for the cube client's tests."""

ODD_KEYS = [
    "clips/a&b <c>.mp4",
    "clips/ünï cödé 🎬.mp4",
    "clips/quote\"'.mp4",
    "clips/tab\t%41+.mp4",
    "clips/&#13;literal&amp;.mp4",
    "clips/2026/01/</Key><Key>forged.mp4",
    "clips/]]>cdata.mp4",
]
