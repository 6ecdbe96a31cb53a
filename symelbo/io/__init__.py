"""Reading and writing: user files, the ``.calc`` grammar, reports, LaTeX and Markdown, PDFs.

- userfiles, characters: reading a user's file safely; naming a character in a message
- grammars, parse_tables, parser: the lark grammars (tables shipped in the package), the reader
- report, render, certificates, notebook: text and JSON, documents, certificate files, Jupyter
- data: the built-in derivations and templates shipped with the package
"""
