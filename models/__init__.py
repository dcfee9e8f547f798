"""Keras 3 two-stream video models: input layers, backbones, fusion, and a name -> builder registry."""
