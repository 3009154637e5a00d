import sys

from tleg_dist.convert import main

sys.exit(main())
