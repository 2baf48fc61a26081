import sys
def main(argv=None) -> int:
    print("detrt cli"); return 0
