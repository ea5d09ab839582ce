"""aimo3_recipe.evaluation"""
