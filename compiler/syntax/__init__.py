"""Front end: text -> Lark tree -> AST with source spans."""
