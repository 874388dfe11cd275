from wardsight.cli import main

main()
