"""aimo3_recipe.utils"""
