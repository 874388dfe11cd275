from wardsight_cli.main import main

main()
