"""aimo3_recipe.training"""
