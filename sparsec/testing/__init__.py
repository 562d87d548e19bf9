"""sc.testing"""
