"""aimo3_recipe.data"""
