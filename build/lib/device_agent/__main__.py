import sys

from device_agent.agent import main

sys.exit(main())
