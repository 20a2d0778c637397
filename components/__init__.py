"""Thin KFP components, one folder per recipe stage."""
