"""aimo3_recipe.inference"""
