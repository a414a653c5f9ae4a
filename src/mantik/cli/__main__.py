from mantik.cli.main import main

main()
